"""The web portal: job monitor, launchpad, data browser, pilots and sites, in the browser.

Served by ``pilotwms serve`` under ``/portal/`` (service ``Web/Portal``). The browser talks
only to the portal's routes; every action runs the same RPC services of the same process with
the signed-in user's own identity (a token from the login server, or the browser's
certificate), never with a host credential. See docs/portal.md and docs/portal-admin.md.
"""
