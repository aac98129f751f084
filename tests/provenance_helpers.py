"""Test images that declare their origin: XMP (IPTC DigitalSourceType), PNG text, EXIF
Software, and a C2PA-signed JPEG made here with c2pa-python and a throwaway certificate
chain generated with `cryptography` (plus a tampered copy), and hostile metadata."""

from __future__ import annotations

import datetime
import io
import struct

from PIL import Image, PngImagePlugin

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def xmp_packet(source_type: str, as_element: bool = False) -> bytes:
    value = IPTC + source_type
    body = (f'<rdf:Description rdf:about=""><Iptc4xmpExt:DigitalSourceType>{value}</Iptc4xmpExt:DigitalSourceType>'
            f"</rdf:Description>") if as_element else f'<rdf:Description rdf:about="" Iptc4xmpExt:DigitalSourceType="{value}"/>'
    return ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">' + body +
            '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()


def image(value=(120, 80, 200), size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, value)


def jpeg(img=None, **save) -> bytes:
    buf = io.BytesIO()
    (img or image()).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def jpeg_with_xmp(source_type: str, as_element: bool = False) -> bytes:
    return jpeg(xmp=xmp_packet(source_type, as_element))


def png_with_text(**text) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_itxt(k, v) if k.startswith("XML:") else info.add_text(k, v)
    buf = io.BytesIO()
    image().save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def jpeg_with_software(name: str) -> bytes:
    exif = Image.Exif()
    exif[0x0131] = name
    return jpeg(exif=exif)


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fakedet tests")])


def throwaway_chain() -> tuple[bytes, bytes]:
    """(PEM chain leaf + CA, PEM private key): an ES256 signer under a test CA, valid a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    def usage(sign_certs: bool):
        return x509.KeyUsage(digital_signature=not sign_certs, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=sign_certs,
                             crl_sign=sign_certs, encipher_only=False, decipher_only=False)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("fakedet test CA")).issuer_name(_name("fakedet test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(usage(True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name("fakedet test signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    return chain, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def c2pa_signed_jpeg(source_type: str = "trainedAlgorithmicMedia", generator: str = "fakedet-test-generator") -> bytes:
    import c2pa

    chain, key = throwaway_chain()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    manifest = {"claim_generator_info": [{"name": generator, "version": "1.0"}], "title": "made-in-a-test.jpg",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(jpeg()), out)
    return out.getvalue()


def tampered(signed: bytes) -> bytes:
    """The signed JPEG with one byte of its image data changed (the manifest's hash no longer matches)."""
    data = bytearray(signed)
    data[-100] ^= 0x55
    return bytes(data)


def jpeg_with_app11(payload: bytes) -> bytes:
    """A JPEG with an APP11 (JUMBF) segment right after SOI holding `payload`."""
    data = jpeg()
    return data[:2] + b"\xff\xeb" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def malformed_c2pa_jpeg() -> bytes:
    """An APP11 segment that looks like a C2PA JUMBF box (JP, jumb, jumd, c2pa) with garbage inside."""
    box = b"JP\x00\x01\x00\x00\x00\x01" + struct.pack(">I", 4000) + b"jumb" + struct.pack(">I", 30) + b"jumd" + \
        b"c2pa" + b"\x00" * 12 + b"c2pa\x00" + bytes(range(256)) * 12
    return jpeg_with_app11(box[:6000])


def huge_xmp_png(megabytes: int = 3) -> bytes:
    padding = "<rdf:li>x</rdf:li>" * (megabytes * (1 << 20) // 18)
    packet = xmp_packet("trainedAlgorithmicMedia").decode().replace("</rdf:RDF>", f"<rdf:Bag>{padding}</rdf:Bag></rdf:RDF>")
    return png_with_text(**{"XML:com.adobe.xmp": packet})


def deeply_nested_xmp_jpeg(depth: int = 6000) -> bytes:
    """An XMP packet nested `depth` elements deep (a recursive XML parser would overflow), within JPEG's 64 KB."""
    packet = xmp_packet("digitalCapture", as_element=True).decode()
    nest = "<a>" * depth + "</a>" * depth
    return jpeg(xmp=packet.replace("</rdf:RDF>", nest + "</rdf:RDF>").encode())
