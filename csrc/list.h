/*
 * list.h - the intrusive list helpers every file uses (layer L1).
 *
 * Concept: linking a node that carries its own link fields into a list held
 * as head/tail pointers.  Nothing here allocates or locks: whoever owns the
 * list guards it (see each list's comment).  The helpers are macros so one
 * spelling serves every node type (messages, work items, records, waiters,
 * ports, ops); they compile to the same few stores the hand-written
 * appends did.  Arguments are evaluated more than once: pass plain lvalues.
 *
 *   TR__SLIST_APPEND(head, tail, node, next)        singly linked FIFO
 *   TR__SLIST_APPEND_CHAIN(head, tail, first, last, next)
 *   TR__DLIST_APPEND(head, tail, node, prev, next)  doubly linked
 *   TR__DLIST_PUSH_FRONT(head, tail, node, prev, next)
 *   TR__DLIST_UNLINK(head, tail, node, prev, next)
 */
#ifndef TR_LIST_H
#define TR_LIST_H

#include <stddef.h>

#define TR__CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Append the chain first..last (linked through `next`) to a singly linked FIFO. */
#define TR__SLIST_APPEND_CHAIN(head, tail, first, last, next) \
    do {                                                      \
        (last)->next = NULL;                                  \
        if (tail) (tail)->next = (first);                     \
        else (head) = (first);                                \
        (tail) = (last);                                      \
    } while (0)

/* Append one node to a singly linked FIFO. */
#define TR__SLIST_APPEND(head, tail, node, next) TR__SLIST_APPEND_CHAIN(head, tail, node, node, next)

/* Append one node to a doubly linked list. */
#define TR__DLIST_APPEND(head, tail, node, prev, next) \
    do {                                               \
        (node)->next = NULL;                           \
        (node)->prev = (tail);                         \
        if (tail) (tail)->next = (node);               \
        else (head) = (node);                          \
        (tail) = (node);                               \
    } while (0)

/* Put one node in front of a doubly linked list. */
#define TR__DLIST_PUSH_FRONT(head, tail, node, prev, next) \
    do {                                                   \
        (node)->prev = NULL;                               \
        (node)->next = (head);                             \
        if (head) (head)->prev = (node);                   \
        else (tail) = (node);                              \
        (head) = (node);                                   \
    } while (0)

/* Take a node that is in the list out of it; its links are cleared. */
#define TR__DLIST_UNLINK(head, tail, node, prev, next)   \
    do {                                                 \
        if ((node)->prev) (node)->prev->next = (node)->next; \
        else (head) = (node)->next;                      \
        if ((node)->next) (node)->next->prev = (node)->prev; \
        else (tail) = (node)->prev;                      \
        (node)->prev = (node)->next = NULL;              \
    } while (0)

#endif /* TR_LIST_H */
