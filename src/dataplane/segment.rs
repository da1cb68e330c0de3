//! TSO/USO segmentation of tun super-packets (being written).
