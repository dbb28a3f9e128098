"""Former home of ``BufferedLRMonitor``: it is now :class:`lightning_bestpractices.optim.monitor.LRMonitor`, the
package's one LR monitor (per-group LR, momentum and weight decay; groups added mid-run; buffered per-step rows).

Example:
    >>> BufferedLRMonitor is LRMonitor
    True
"""

from __future__ import annotations

from .optim.monitor import LRMonitor

BufferedLRMonitor = LRMonitor

__all__ = ["BufferedLRMonitor", "LRMonitor"]
