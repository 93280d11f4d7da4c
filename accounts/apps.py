from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save

        from accounts.authentication import forget_saved_user

        # A saved user (password, active flag) is looked up afresh by the JWT authentication.
        post_save.connect(forget_saved_user, sender=get_user_model(), dispatch_uid="accounts.forget_saved_user")
