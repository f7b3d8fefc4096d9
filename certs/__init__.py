"""The lab's certificates: CAs, server certificates for registry names, certs.d layouts."""

from .authority import IssuedCert, LabCA

__all__ = ["IssuedCert", "LabCA"]
