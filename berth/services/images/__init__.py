"""Images, registries and the image store (Glance-like local store).

Owns: Zun's image API (``images``), image references resolved against
registries (``refs``), image search (``search``), the local image store
(``store``), private registries and their credentials (``registries``) and the
check that an image address is not the host's or a private network's
(``address_check``). May import: events, store, images (the driver-side
reference parser), domain.
"""
