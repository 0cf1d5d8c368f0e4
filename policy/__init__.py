"""jan-server's Pulumi policy pack (run with `pulumi preview --policy-pack policy`)."""
