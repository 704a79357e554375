from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("dms/", views.dm_start, name="dm-start"),
    path("rooms/<str:slug>/", views.room_detail, name="room"),
    path("rooms/<str:slug>/join/", views.join, name="room-join"),
]
