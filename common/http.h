/* SPDX-License-Identifier: MIT */
/*
 * http.h — HTTP reason phrases (RFC 9110 §15), for the status lines and
 * problem titles wsgate writes itself: the edge's handshake refusals and the
 * control API's problem documents. Pure; any thread.
 */
#ifndef WSG_HTTP_H
#define WSG_HTTP_H

/* The reason phrase of status: the registered one (RFC 9110, 6585, 7725,
 * 8297, 9457's users), else its class's ("Informational", "Success",
 * "Redirection", "Client Error", "Server Error"), else "Unknown". */
const char *wsg_http_reason(int status);

#endif
