"""The Celery application. Tasks live in each app's tasks.py; the beat schedule is stored in the
database (django-celery-beat) so it can be edited in the admin."""

import os

from celery import Celery
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

from cryptostock import request_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptostock.settings")

app = Celery("cryptostock")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The request id of the request that queued a task, on the task's log lines (cryptostock.request_id).
before_task_publish.connect(request_id.add_request_id_header, weak=False)
task_prerun.connect(request_id.enter_task, weak=False)
task_postrun.connect(request_id.leave_task, weak=False)


def use_django_logging(**kwargs: object) -> None:
    """Workers and beat log as the web processes do (settings.LOGGING: LOG_LEVEL, LOG_FORMAT,
    LOG_FILE, the request id), instead of Celery replacing the root logger's handlers with its own."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


# A receiver of setup_logging makes Celery leave logging alone.
setup_logging.connect(use_django_logging, weak=False)
