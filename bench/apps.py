from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Only in bench settings: lets the workers the bench starts find the bench job kinds."""

    name = "bench"
    label = "quire_bench"
    verbose_name = "Benchmarks"
