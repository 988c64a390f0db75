//! acl_file (work in progress).
