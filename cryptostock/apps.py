from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class CryptostockAdminConfig(DjangoAdminConfig):
    """django.contrib.admin with the project's site (cryptostock.admin_site) as `admin.site`."""

    default_site = "cryptostock.admin_site.CryptostockAdminSite"
