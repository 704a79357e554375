"""The tutorial's `ChatConsumer` (Channels docs, tutorial part 3), plus the save
that a real chat needs, done the way the docs suggest: `database_sync_to_async`
before the `group_send`. A sender hearing its own broadcast back therefore
knows the row was saved (that is its acknowledgement in the benchmarks).
"""

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from .models import Message


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data):
        text_data_json = json.loads(text_data)
        message = text_data_json["message"]
        await self.save_message(message)
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.message", "message": message})

    @database_sync_to_async
    def save_message(self, message):
        Message.objects.create(room=self.room_name, body=message)

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"message": event["message"]}))
