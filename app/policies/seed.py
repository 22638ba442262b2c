"""The first privacy version: the privacy page as it read before policies had versions, in
Markdown. It becomes version 1 when no privacy version exists yet (service.ensure_first_versions)."""

FIRST_PRIVACY_SUMMARY = "The privacy page as it stood before policies were kept as versions."

# {contact_email} and {contact_url} are filled in when the version is made.
FIRST_PRIVACY_TEXT = """\
Lumnar Creations SRL runs this site, the live chat product and the automations we build for customers. This page says, in plain words, what we keep about you, why, and what you can ask of us.

## What we keep

- **Your account**: your name, e-mail address and a one-way hash of your password (never the password itself).
- **Automation set-up**: the access keys or logins a flow needs to reach the platforms you chose. We keep them encrypted and show them to nobody, you included, once saved.
- **Chats**: the messages and files exchanged through the chat widget, kept so your team can read and answer them in the dashboard. You can delete them whenever you want.
- **Cookies**: one cookie keeps you logged in. Anything beyond what the site needs to work will only be set if you agree.
- **Payments**: our payment processor (Stripe) handles card details. We keep only the billing details and the record of each transaction.

We collect nothing beyond what running the site, the dashboard and the automations agreed with you requires.

## Why we use it

To run the services you signed up for, to take payments, to write to you about your account (security notices, changes to this policy), to find and fix problems, and to stop fraud or misuse.

## Who else sees it

We never sell or trade your data. Companies that help us run the service (such as Stripe for payments) get only what their task needs and may use it for nothing else. We hand data to authorities only when the law obliges us, and it would pass to a buyer only if the company itself were sold or merged.

## How long we keep it

As long as the purposes above need it, or longer only where the law requires. Chats stay until you delete them or until the retention period you set for your site ends.

## Keeping it safe

Encrypted secrets, hashed passwords, sessions you can end from your settings, and strict limits on who may look at customer data. No system is perfectly safe, but we work to keep yours as safe as we can.

## Your rights

You can ask for a copy of your data, have it corrected, have it deleted, object to or restrict how we use it, and take it elsewhere in a machine-readable file. Several of these are already buttons in your dashboard settings; for the rest, write to us and we will act promptly.

## Links elsewhere

Links to other websites lead to places whose privacy practices we do not control; please read their policies too.

## Changes

If we change how we handle your data in an important way, we will e-mail you or show a clear notice here before the change applies.

## Contact

Write to Lumnar Creations SRL at [{contact_email}](mailto:{contact_email}) with any question or request about your data, or see the [contact page]({contact_url}).
"""
