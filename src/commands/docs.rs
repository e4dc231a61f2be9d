//! COMMAND DOCS / COMMAND INFO replies built from the command table's synopsis strings.
//! Pure functions; run on whichever shard serves the COMMAND call.
