from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("dms/", views.dm_start, name="dm-start"),
    path("rooms/<str:slug>/", views.room_detail, name="room"),
    path("rooms/<str:slug>/join/", views.join, name="room-join"),
    # Where a mention in a message links (messaging.markdown.MENTION_HREF).
    path("u/<str:username>/", views.user_detail, name="user"),
]
