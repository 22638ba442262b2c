"""The contact channel: the public contact form, privacy and security requests with their due
dates, the staff's request queue, and /.well-known/security.txt."""
