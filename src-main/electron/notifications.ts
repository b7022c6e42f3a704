// The desktop's notifications are the server's (server/notifications.ts): the same words everywhere.
export * from '../server/notifications.js';
