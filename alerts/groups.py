"""Names of the Channels groups alerts are pushed to. Pure: shared by the publisher and the consumer."""


def user_group(user_id: int) -> str:
    """Every WebSocket connection of one signed-in user joins this group (see market.consumers)."""
    return f"user.{user_id}"
