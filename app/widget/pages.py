"""What the widget's frame is given: the chat's template context and the frame's CSP, built the
same for the Flask views and for the chat's own message route (app/chat/wire.py)."""

from app.chat import service
from app.chat.models import ChatEvent, Message
from app.widget import hours, language
from app.widget import service as widget_service
from app.widget.forms import WidgetEmailForm, WidgetMessageForm, WidgetProfileForm


def frame_csp(site) -> str:
    ancestors = " ".join(site.origins) if site else "*"
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {ancestors}")


def chat_context(site, visitor, **extra):
    conv = service.current_conversation(visitor)
    messages = list(Message.select().where((Message.conversation == conv) & Message.visible_to_visitor())
                    .order_by(Message.id)) if conv else []
    after = 0
    if conv is not None:
        row = (ChatEvent.select(ChatEvent.seq).where(ChatEvent.conversation_id == conv.id)
               .order_by(ChatEvent.seq.desc()).first())
        after = row.seq if row else 0
    last_visitor = max((m.id for m in messages if m.sender == Message.VISITOR), default=0)
    within = hours.status(site)  # outside the site's hours, away whoever is online
    away = hours.team_away(site, within)
    context = dict(
        site=site, visitor=visitor, conversation=conv, messages=messages, after=after,
        ticket=widget_service.stream_ticket(conv, visitor, language.current()) if conv else None, away=away,
        hours=within,
        # Their words are kept while nobody is online; then the chat asks where to answer.
        ask_email=bool(away and conv and not visitor.email),
        email_form=WidgetEmailForm(formdata=None),
        seen=bool(conv and last_visitor and conv.agent_read_message_id >= last_visitor),
        form=WidgetMessageForm(formdata=None), profile_form=WidgetProfileForm(
            formdata=None, name=visitor.name, email=visitor.email),
    )
    context.update(extra)
    return context
