"""pilotwms's OAuth2 / OpenID Connect authorization server (the login issue).

``tables`` (rows and queries) -> ``grants`` (device, code, refresh, proxy exchange),
``idp`` (the external IdP each VO signs in at), ``revocation``, ``delegation`` ->
``handlers`` (the HTTP endpoints) and ``service`` (``Framework/Auth``). See docs/login.md.
"""
