"""Unattended transfers (ectrans-style) and asynchronous data push with data movers (ECPDS-style).

* associations: a user's named remote destinations, secrets encrypted at rest
  (:mod:`transfer.logic.secrets`, :mod:`transfer.logic.associations`);
* transfers: ``dtransfer`` requests executed by the ``TransferAgent`` with retries
  (:mod:`transfer.logic.transfers`, :mod:`transfer.agents.transfer_agent`);
* data push: ``dpush`` data files retrieved or received by data movers, separate
  ``pilotwms mover`` processes (:mod:`transfer.logic.push`, :mod:`transfer.mover`).

The user guide chapter is docs/transfers.md; the administrator's is docs/transfers-admin.md.
"""
