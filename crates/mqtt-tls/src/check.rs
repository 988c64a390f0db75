//! Offline checks of a certificate set, for `tls-check`.
