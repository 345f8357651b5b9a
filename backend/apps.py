from django.apps import AppConfig


class BackendConfig(AppConfig):
    name = "backend"
    label = "backend"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from backend import checks  # noqa: F401  (registers the start-up checks)

        # Every app declares its job kinds in jobs.py; importing them here means any process
        # (web, worker, scheduler) can look a kind up, e.g. to run its status hook.
        autodiscover_modules("jobs")
