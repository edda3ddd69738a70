"""localsnn.rtl: Amaranth RTL generated from the spec (planned: issue "Amaranth RTL ... co-simulation")."""
