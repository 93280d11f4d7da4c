from django.urls import include, path
from rest_framework.routers import SimpleRouter

from accounts.api import audit, views

router = SimpleRouter()
router.register("me/tokens", views.MyRefreshTokensViewSet, basename="my-token")
router.register("audit/sign-ins", audit.SignInViewSet, basename="audit-sign-in")
router.register("audit/changes", audit.ChangeViewSet, basename="audit-change")

urlpatterns = [
    path("auth/token/", views.TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("auth/token/verify/", views.TokenVerifyView.as_view(), name="token-verify"),
    path("auth/logout/", views.LogoutView.as_view(), name="token-logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("", include(router.urls)),
]
