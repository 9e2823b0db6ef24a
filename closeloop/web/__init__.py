"""closeloop's HTTP app: the incident API and the mount point of the integration plugins' webhooks
(closeloop.web.app), the helpers every endpoint shares (closeloop.web.requests), the ticket status road
(closeloop.web.ticket_status) and the narrow store interface it needs (closeloop.web.storage)."""
