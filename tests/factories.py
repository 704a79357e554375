import factory
from rest_framework.authtoken.models import Token

from accounts.models import User
from messaging.markdown import render_markdown
from messaging.models import Message
from rooms.models import Membership, Room
from rooms.services import dm_key_for

PASSWORD = "chatchat123"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    display_name = factory.LazyAttribute(lambda o: o.username.title())
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class RoomFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Room
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"room-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    created_by = factory.SubFactory(UserFactory)

    @factory.post_generation
    def owner_membership(obj, create, extracted, **kwargs):  # noqa: N805
        if create and obj.created_by is not None:
            Membership.objects.get_or_create(room=obj, user=obj.created_by, defaults={"role": Membership.Role.OWNER})


class DmFactory(factory.django.DjangoModelFactory):
    """A direct message of `participants`, shaped as rooms.services.dm_open makes one.

    For tests about what happens in a DM; tests of opening one call `dm_open`.
    """

    class Meta:
        model = Room
        skip_postgeneration_save = True

    class Params:
        participants = factory.LazyFunction(lambda: [UserFactory(), UserFactory()])

    kind = Room.Kind.DM
    is_private = True
    slug = factory.Sequence(lambda n: f"dm-{n:012x}")
    dm_key = factory.LazyAttribute(lambda o: dm_key_for(u.pk for u in o.participants))
    name = factory.LazyAttribute(lambda o: ", ".join(u.get_display_name() for u in o.participants))
    created_by = factory.LazyAttribute(lambda o: o.participants[0])

    @factory.post_generation
    def members(obj, create, extracted, **kwargs):  # noqa: N805
        # Everyone is a plain member: a DM has no owner.
        if create:
            Membership.objects.bulk_create(
                [Membership(room=obj, user_id=int(pk), role=Membership.Role.MEMBER) for pk in obj.dm_key.split(",")]
            )


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    room = factory.SubFactory(RoomFactory)
    role = Membership.Role.MEMBER


class MessageFactory(factory.django.DjangoModelFactory):
    """Writes a row directly; tests of posting go through messaging.services instead."""

    class Meta:
        model = Message

    room = factory.SubFactory(RoomFactory)
    author = factory.SubFactory(UserFactory)
    body = factory.Faker("sentence")
    # As the services would store it (deleted rows keep "", as message_delete leaves them).
    html = factory.LazyAttribute(lambda o: "" if o.deleted_at else render_markdown(o.body))
    deleted_at = None

    @factory.lazy_attribute
    def seq(self):
        room = self.room
        room.refresh_from_db(fields=["last_seq"])
        Room.objects.filter(pk=room.pk).update(last_seq=room.last_seq + 1)
        room.last_seq += 1
        return room.last_seq


def token_for(user: User) -> str:
    return Token.objects.get_or_create(user=user)[0].key
