from django.apps import AppConfig


class PodcastConfig(AppConfig):
    name = "podcast"
    default_auto_field = "django.db.models.BigAutoField"
