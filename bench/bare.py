"""The job-overhead baseline's job: a plain function for bare RQ (no Django, no Job row)."""


def noop() -> None:
    return None
