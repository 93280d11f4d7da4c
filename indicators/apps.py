from django.apps import AppConfig


class IndicatorsConfig(AppConfig):
    name = "indicators"

    def ready(self) -> None:
        from indicators import checks  # noqa: F401  (registers the TA-Lib check)
