"""Stand-in servers for trying closeloop without accounts (`closeloop standin jira|github|oidc`) and for tests.
The worker and the web app never import them (tests/test_layout.py checks it).

`jira` and `github` are the Jira Cloud and GitHub REST stand-ins, on the shared server base `_server`; `oidc` an
OpenID Connect provider for the web app's sign-in (`closeloop standin oidc` and tests); `spec`
checks what a stand-in answers against the vendor's API description (tests and `bench/ticket_sync.py
--validate`; it needs the test extras). The stand-ins only tests use (PagerDuty, Slack) are in tests/standins/."""
