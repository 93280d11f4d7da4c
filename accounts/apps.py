from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from auditlog.models import LogEntry
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
        from django.db.models.signals import post_save, pre_save

        from accounts import audit
        from accounts.authentication import forget_saved_user

        # A saved user (password, active flag) is looked up afresh by the JWT authentication.
        post_save.connect(forget_saved_user, sender=get_user_model(), dispatch_uid="accounts.forget_saved_user")

        # The audit trail (accounts.audit).
        audit.register_audited_models()
        pre_save.connect(audit.fill_in_who, sender=LogEntry, dispatch_uid="accounts.audit.fill_in_who")
        post_save.connect(audit.log_change, sender=LogEntry, dispatch_uid="accounts.audit.log_change")
        user_logged_in.connect(audit.on_logged_in, dispatch_uid="accounts.audit.on_logged_in")
        user_logged_out.connect(audit.on_logged_out, dispatch_uid="accounts.audit.on_logged_out")
        user_login_failed.connect(audit.on_login_failed, dispatch_uid="accounts.audit.on_login_failed")
