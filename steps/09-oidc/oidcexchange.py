"""ExchangeAuthenticator: GenericOAuthenticator, plus an OAuth 2.0 Token Exchange (RFC 8693) before each start.

Installed by stage 09's install.sh as /usr/local/lib/jupyterhub/oidcexchange.py;
jupyterhub_config.py puts that directory on sys.path and imports the class.

Before each start of a user's server the hub trades the user's access token (fresh:
refresh_pre_spawn has just refreshed it) at the provider's token endpoint for a token
whose audience is a second service, and gives that token to the server in an
environment variable. No token is ever logged.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from jupyterhub.handlers.base import BaseHandler
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClientError, HTTPRequest
from traitlets import Unicode

# JupyterHub 6.1.1 reads this attribute of a request when a refresh fails, but sets it
# only on requests authenticated with a token: for a browser's request the failed
# refresh then ends in a 500 (AttributeError) instead of "login again". A default fixes it.
if not hasattr(BaseHandler, "_token_authenticated"):
    BaseHandler._token_authenticated = False

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def refuse(status: int, message: str) -> web.HTTPError:
    """An HTTP error whose message the hub's pages show as it is."""
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message  # what JupyterHub's spawn page and REST API show
    return error


def provider_error(body: bytes) -> str:
    """The provider's error answer (RFC 6749 5.2) as one line: "description (code)". Never a token."""
    try:
        answer = json.loads(body)
    except ValueError:
        return "an answer that is not JSON"
    if not isinstance(answer, dict):
        return "an answer that is not an OAuth error"
    description, code = answer.get("error_description", ""), answer.get("error", "no error code")
    return f"{description} ({code})" if description else str(code)


class ExchangeAuthenticator(GenericOAuthenticator):
    """Log in with OpenID Connect; before each start, exchange the user's access token for one for another service."""

    exchange_audience = Unicode(
        config=True,
        help="The audience (the second service) of the exchanged token, e.g. https://catalogue.example.org.",
    )
    exchange_env = Unicode(
        "CATALOGUE_TOKEN",
        config=True,
        help="The environment variable of the user's server that holds the exchanged token.",
    )

    async def get_token_info(self, handler, params):
        """As GenericOAuthenticator does, but a provider's refusal (an HTTP 400 or 401) becomes a clear 403.

        oauthenticator 17.4 reads the provider's error only from an HTTP 200 answer; a
        standard provider answers 400 or 401, which would end in a bare 500.
        """
        try:
            return await super().get_token_info(handler, params)
        except HTTPClientError as e:
            if e.response is None or not 400 <= e.code < 500:
                raise
            raise refuse(403, f"An access token was not returned: {provider_error(e.response.body)}") from None

    async def exchange(self, username: str, access_token: str) -> dict:
        """RFC 8693 at the provider's token endpoint: ``access_token`` for a token for ``exchange_audience``."""
        params = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": access_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": self.exchange_audience,
        }
        if not self.basic_auth:  # client_secret_post: the client's credentials in the body
            params.update(client_id=self.client_id, client_secret=self.client_secret)
        request = HTTPRequest(
            self.token_url,
            **{
                **self.http_request_kwargs,
                "method": "POST",
                "headers": self.build_token_info_request_headers(),  # client_secret_basic, as for the code
                "body": urlencode(params),
                "validate_cert": self.validate_server_cert,
            },
        )
        response = await self.http_client.fetch(request, raise_error=False)
        if response.code != 200:
            reason = provider_error(response.body) if response.body else f"HTTP {response.code}"
            self.log.warning("Token exchange for %s refused: %s", username, reason)
            raise refuse(403, f"The hub could not get a token for {self.exchange_audience}: {reason}")
        answer = json.loads(response.body)
        self.log.info(
            "Exchanged %s's access token for a token for %s (expires in %s s)",
            username,
            self.exchange_audience,
            answer.get("expires_in", "?"),
        )
        return answer

    async def pre_spawn_start(self, user, spawner):
        """Before each start: exchange the user's access token and hand the result to the server."""
        if not self.exchange_audience:
            return
        auth_state = await user.get_auth_state()
        if not auth_state or not auth_state.get("access_token"):
            raise refuse(403, "The hub holds no token of yours: log out and log in again.")
        answer = await self.exchange(user.name, auth_state["access_token"])
        spawner.environment = {**spawner.environment, self.exchange_env: answer["access_token"]}
