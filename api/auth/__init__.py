"""Identity: who is calling (OIDC bearer tokens, API keys, local accounts' sessions), turned into a ``Principal``
(api/principal.py) by ``guard.authorize``, which also applies the route's policy (api/policy.py)."""
