//! Just-in-time approvals (in progress).
