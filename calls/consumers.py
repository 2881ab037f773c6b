from channels.generic.websocket import AsyncJsonWebsocketConsumer


class BotStatusConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close()


class CallListConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close()


class CallDetailConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close()
