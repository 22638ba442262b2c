"""Data rights: the "Privacy & data" page, one section per right (access and portability,
correction, deletion, objection, restriction), and the jobs that make each true."""
