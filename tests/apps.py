from django.apps import AppConfig


class TestsConfig(AppConfig):
    """Only in test settings: lets workers and the reconciler find the test job kinds."""

    name = "tests"
    label = "quire_tests"
