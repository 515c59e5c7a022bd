"""Live troubleshooting: why an address is (not) reachable from a namespace, and the fix.

``state`` reads a namespace through netlink (read-only), ``walk`` follows the
path hop by hop the way an expert would and stops at the first cause,
``probes`` confirms from inside the source namespace, and ``fix`` applies the
hinted change (only on namespaces netdiag created) before re-checking.
"""
