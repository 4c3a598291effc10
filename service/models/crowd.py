"""How many requests this process has received and not answered yet, over both protocols.

The front ends count: HTTP from the moment a request's head is parsed (before the event loop
runs its handler), gRPC from the moment its handler starts. The batcher reads it
(service/models/batching.py): a small request runs inline on the event loop only when it is the
only one, because with other requests waiting, batching them beats answering one at a time
(py-spy at 64 HTTP clients: the inline model call was 13% of a worker while nothing got
batched); and with others in, a request reaching an idle batcher waits one loop pass for the
handlers already runnable instead of going to the model alone.
"""


class Crowd:
    """The process-wide count (class attributes: one event loop per process)."""

    waiting = 0

    @classmethod
    def crowded(cls) -> bool:
        """True while another request waits besides the one asking."""
        return cls.waiting > 1
