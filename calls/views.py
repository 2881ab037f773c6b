from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def live_list(request):
    return HttpResponse("live")


@login_required
def call_detail(request, session_id):
    return HttpResponse("detail")
