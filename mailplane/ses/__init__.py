"""The SES account and its identities as SES reports them (``mailplane ses status``)."""
