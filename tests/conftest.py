import os

from hypothesis import HealthCheck, settings

# CI runs more examples; a developer's run stays quick. RXINVEST_HYPOTHESIS_PROFILE overrides.
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile(os.environ.get("RXINVEST_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
