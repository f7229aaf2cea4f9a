//! `COM_CHANGE_USER`: the session logs in again, as another user, on the
//! same connection.
//!
//! With passthrough authentication the database checks the new user, so
//! sluice only moves the packets, as at the first login: the command (its
//! user, database and character set read, the auth response never
//! recorded) is recorded and made durable, forwarded, and the
//! authentication exchange that follows — OK, ERR, or an
//! AuthSwitchRequest and more packets either way — relayed until the
//! database's OK or ERR. Both legs count sequence ids from the command,
//! so they pass unchanged. On OK the session goes on under a new
//! [`sluice_pgproxy::SessionPolicy`] and rewriter, made for the new user
//! and database (the identity stays the workload's): rules may name
//! database users. On ERR MariaDB keeps the old user, database and
//! character set, and so does sluice.
//!
//! Either way the server has dropped the session's prepared statements
//! (it resets the session before it authenticates), and sluice forgets
//! them too.
//!
//! With `auth = "inject"` the workload holds no database password and
//! another user would need admitting again: the command is refused (ERR
//! 1045) and the session goes on as the same user.
use std::time::Instant;

use sluice_mywire::{
    Packet,
    command::ChangeUser,
    response::{ErrPacket, OkPacket},
};
use sluice_pgproxy::{Metrics, SessionInfo, TargetAuth};

use crate::{MyError, codes, record, session::Session, startup};

/// Authentication round trips before sluice gives up on a change of user.
const MAX_AUTH_STEPS: usize = 16;

/// The rule recorded with an allowed `COM_CHANGE_USER`.
const RULE: &str =
    "builtin.change_user: the database authenticates the new user; the policy is made anew for it";

impl Session<'_> {
    /// `COM_CHANGE_USER` (its body after the command byte).
    pub(crate) async fn change_user(
        &mut self,
        packet: &Packet,
        body: &[u8],
    ) -> Result<(), MyError> {
        let change = match ChangeUser::parse(body, self.caps) {
            Ok(c) => c,
            Err(e) => {
                self.err(
                    codes::MALFORMED,
                    "08S01",
                    &format!("sluice: malformed COM_CHANGE_USER: {e}"),
                );
                return self.flush().await;
            }
        };
        let user = String::from_utf8_lossy(&change.user).into_owned();
        let database = String::from_utf8_lossy(&change.database).into_owned();
        let refusal = if matches!(self.ctx.route.target.auth, TargetAuth::Inject(_)) {
            Some((
                codes::ACCESS_DENIED,
                "28000",
                "sluice: COM_CHANGE_USER is refused on this target: sluice logs in with a vaulted credential (auth = \"inject\") and another user must be admitted on a new connection".to_owned(),
            ))
        } else {
            change
                .charset
                .filter(|c| startup::unsafe_charset(*c))
                .map(|c| {
                    (
                        codes::CHARSET,
                        "42000",
                        format!(
                            "sluice: client character set {c} is refused: its multi-byte characters can hide a quote or backslash, so sluice could read a statement differently from the database; use utf8mb4"
                        ),
                    )
                })
        };
        let text = describe(&user, &database);
        let rule = match &refusal {
            None => RULE.to_owned(),
            Some((_, _, message)) => format!(
                "builtin.change_user: {}",
                message.trim_start_matches("sluice: ")
            ),
        };
        let seq = self.ctx.log.map(|log| {
            log.record(&record::builtin(
                "change_user",
                &text,
                refusal.is_none(),
                &rule,
            ))
        });
        let metrics = &self.ctx.config.metrics;
        if let Some((code, state, message)) = refusal {
            self.summary.statements_denied += 1;
            Metrics::add(&metrics.statements_denied, 1);
            tracing::info!(event = "change_user_refused", user = %user, reason = %message, "COM_CHANGE_USER refused");
            self.err(code, state, &message);
            return self.flush().await;
        }
        self.summary.statements_allowed += 1;
        Metrics::add(&metrics.statements_allowed, 1);
        let started = Instant::now();
        self.forward(packet).await?;
        // The server resets the session (prepared statements included)
        // before it authenticates, whatever the outcome.
        self.stmts.clear();
        let max = self.max;
        for _ in 0..MAX_AUTH_STEPS {
            tokio::select! {
                p = startup::read(&mut self.upstream, &mut self.ubuf, max, "upstream") => {
                    let p = p?;
                    self.pass(&p);
                    self.flush().await?;
                    let took = started.elapsed().as_micros() as u64;
                    match p.payload.first() {
                        Some(0x00) => {
                            let ok = OkPacket::parse(&p.payload, self.caps).ok();
                            if let Some(log) = self.ctx.log {
                                log.record(&record::ok(seq, ok.as_ref(), record::Tally::default(), took));
                            }
                            self.adopt(&user, &database);
                            return Ok(());
                        }
                        Some(0xFF) => {
                            let err = ErrPacket::parse(&p.payload).unwrap_or_else(|_| {
                                ErrPacket::new(0, "HY000", "unreadable ERR packet")
                            });
                            tracing::info!(event = "change_user_failed", user = %user, error = %err.message, "the database refused COM_CHANGE_USER");
                            if let Some(log) = self.ctx.log {
                                log.record(&record::error(seq, &err, record::Tally::default(), took));
                            }
                            return Ok(());
                        }
                        // AuthSwitchRequest, AuthMoreData: the client answers.
                        _ => {}
                    }
                }
                p = startup::read(&mut self.client, &mut self.cbuf, max, "client") => {
                    let p = p?;
                    self.summary.bytes_up += p.raw.len() as u64;
                    self.cseq = p.seq.wrapping_add(1);
                    startup::write(&mut self.upstream, &p.raw, "upstream").await?;
                }
            }
        }
        Err(MyError::Ended(format!(
            "COM_CHANGE_USER authentication took more than {MAX_AUTH_STEPS} steps"
        )))
    }

    /// The database accepted the new user: a new policy and rewriter for
    /// it, the workload's identity unchanged.
    fn adopt(&mut self, user: &str, database: &str) {
        let route = self.ctx.route;
        let info = SessionInfo {
            protocol: "mysql",
            identity: route.identity,
            groups: route.groups,
            target: &route.target.name,
            user,
            database,
        };
        self.policy = self.ctx.config.policy.session(&info);
        self.rewriter = self.policy.rewriter();
        tracing::info!(
            event = "user_changed",
            user,
            database,
            "COM_CHANGE_USER accepted; policy made anew"
        );
    }
}

/// How the command is recorded: the new user and database, never the
/// auth response.
fn describe(user: &str, database: &str) -> String {
    let quote = |s: &str| s.replace('\'', "''");
    format!(
        "COM_CHANGE_USER user='{}' database='{}'",
        quote(user),
        quote(database)
    )
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn recorded_text_names_user_and_database() {
        for (user, db, want) in [
            ("bob", "shop", "COM_CHANGE_USER user='bob' database='shop'"),
            ("o'neil", "", "COM_CHANGE_USER user='o''neil' database=''"),
        ] {
            assert_eq!(describe(user, db), want);
        }
    }
}
