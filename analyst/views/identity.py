"""Who is using the app: sign-in through the team's OpenID Connect provider, or local mode.

Not a page. app.py calls `gate()` before any page runs:

- **Sign-in** when `.streamlit/secrets.toml` (or the file `--secrets.files` names) has an `[auth]`
  section: Streamlit's `st.login` / `st.user` (Keycloak, Okta, Google, Entra... any OIDC provider).
  A request that is not signed in - a shared `/case?user=...` link included - sees the sign-in
  page and no data. The identity is the token's `email` (else `preferred_username`, `name`,
  `sub`); its `groups` claim, when the provider sends one, feeds the role mapping.
- **Local mode** otherwise: one user, the local operator named by the settings (SLEUTH_ANALYST,
  else the OS login name), with a "local mode - no sign-in" badge. Local mode serves loopback
  only: a server bound to another address (or to every interface, Streamlit's default when
  nothing sets `server.address`), or a request arriving from another host, gets a one-line
  refusal and no data, however the server was started.

Roles come from the settings (analyst/access.py); the use cases check them again before writing.
"""
from __future__ import annotations

import ipaddress

import streamlit as st

from analyst import resources
from analyst.access import Actor
from analyst.views.text import esc

LOCAL_BADGE = "local mode - no sign-in"
IDENTITY_CLAIMS = ("email", "preferred_username", "name", "sub")


def auth_configured() -> bool:
    """Whether an `[auth]` secrets section configures sign-in."""
    try:
        return bool(st.secrets.get("auth"))
    except Exception:  # no secrets file at all: local mode
        return False


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for "", 0.0.0.0, :: and any other host."""
    text = (address or "").strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def local_mode_refusal() -> str | None:
    """Why this request may not be served without sign-in, or None when it may."""
    address = st.get_option("server.address")
    if not is_loopback(address):
        where = f"address {address}" if address else "every interface (server.address is not set)"
        return (f"sleuth refuses to serve {where} without sign-in: serve on 127.0.0.1 (sleuth app, "
                "or server.address in .streamlit/config.toml) or configure [auth] in .streamlit/secrets.toml")
    remote = st.context.ip_address   # None for a loopback client
    if isinstance(remote, str) and not is_loopback(remote):
        return f"sleuth in local mode answers this machine only (request from {remote}): configure sign-in"
    return None


def signed_in_identity() -> tuple[str, tuple[str, ...]] | None:
    """(identity, groups) of the signed-in user, None when not signed in."""
    if not st.user.get("is_logged_in"):
        return None
    name = next((str(st.user.get(c)).strip() for c in IDENTITY_CLAIMS if str(st.user.get(c) or "").strip()), "")
    groups = st.user.get("groups") or ()
    groups = (groups,) if isinstance(groups, str) else tuple(str(g) for g in groups)
    return (name, groups) if name else None


def actor() -> Actor | None:
    """The Actor of this request: the signed-in user (None without a role or not signed in), or
    in local mode the local operator."""
    roles = resources.settings().roles
    if auth_configured():
        found = signed_in_identity()
        return None if found is None else roles.signed_in(*found)
    return resources.settings().local_actor()


def gate() -> Actor:
    """The Actor allowed to use this page, or draw the sign-in page / the refusal and stop."""
    if not auth_configured():
        refusal = local_mode_refusal()
        if refusal:
            st.error(refusal, icon=":material/block:")
            st.stop()
        return resources.settings().local_actor()
    found = signed_in_identity()
    if found is None:
        _sign_in_page()
        st.stop()
    me = resources.settings().roles.signed_in(*found)
    if me is None:
        st.title("sleuth")
        st.error(f"Signed in as {_plain(found[0])}, who has no role in sleuth: ask an admin to add you "
                 "to SLEUTH_ROLES.", icon=":material/lock:")
        st.button("Sign out", on_click=st.logout, icon=":material/logout:")
        st.stop()
    return me


def sidebar(me: Actor) -> None:
    """Who is working (and how to sign out), drawn in the sidebar."""
    if me.how == "login":
        st.markdown(f"Signed in: **{_plain(me.name)}**  \n:gray[role: {me.role}]")
        st.button("Sign out", on_click=st.logout, icon=":material/logout:", key="sign_out")
    else:
        st.markdown(f":orange-badge[:material/lan: {LOCAL_BADGE}]")
        st.markdown(f"Working as **{_plain(me.name)}**  \n:gray[role: {me.role} - set SLEUTH_ANALYST]")


def _sign_in_page() -> None:
    st.title("sleuth")
    st.subheader("Fraud investigation workbench")
    st.info("Sign in with your organisation's account to work cases.", icon=":material/lock:")
    st.button("Sign in", on_click=st.login, type="primary", icon=":material/login:", key="sign_in")


def _plain(value: object) -> str:
    return esc(value)
