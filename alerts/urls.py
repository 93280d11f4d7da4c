from django.urls import path

from alerts import views

urlpatterns = [
    path("", views.alerts, name="alerts"),
]
