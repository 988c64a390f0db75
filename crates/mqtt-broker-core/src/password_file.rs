//! password_file (work in progress).
