class BackupError(Exception):
    """A backup or restore could not be made; the message says why. Nothing was changed."""
