"""pptrain: the server half. Trains [P]'s adaptation network + ResNet-18 on datasets that
ppencrypt encrypted, reading them only through ``ppencrypt.formats``; it never needs a key."""
