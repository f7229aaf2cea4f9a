//! OpenID Connect: token verification and the device flow (in progress).
