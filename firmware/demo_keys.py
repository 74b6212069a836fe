"""The INSECURE demo keys of bijli, for demo meters and tests only.

They are public (the DLMS ones are the well-known test keys printed in countless examples):
anybody can read and forge traffic protected by them, and mint tokens for a meter keyed from
the demo vending key. A board provisioned with its own keys (firmware/main.py) never uses
them; the host names them INSECURE wherever it offers them. Never use them for a real meter.
"""

# DLMS suite 0 (AES-GCM-128): global unicast encryption key (EK) and authentication key (AK)
INSECURE_DEMO_BLOCK_CIPHER_KEY = bytes(range(16))  # 000102...0F
INSECURE_DEMO_AUTHENTICATION_KEY = bytes(range(0xD0, 0xE0))  # D0D1...DF
# the LLS password of the reader association
INSECURE_DEMO_PASSWORD = b"12345678"
# the vending key a meter's token keys are derived from (firmware/token_codec.derive_key)
INSECURE_DEMO_VENDING_KEY = b"bijli-demo-vending-key-INSECURE!"
