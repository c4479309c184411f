"""Tools around the node, out of the daemon's way: the local devnet, the healthcare demo,
the tx CLI and the JSON-to-struct helper it uses."""
