"""Scan backends: one interface (`backends.base`), one module per implementation, and
`backends.factory` to build the configured one."""
