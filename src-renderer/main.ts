// Renderer entry and composition root: choose the transport, build the state on it, mount the console.
import { mount } from 'svelte';
import App from './App.svelte';
import { chooseConsoleApi } from './api/index.js';
import { Router } from './lib/route.svelte.js';
import { AgentsState } from './state/agents.svelte.js';
import { ConsoleState } from './state/console.svelte.js';

const target = document.getElementById('app');
if (!target) throw new Error('index.html has no #app element to mount into');

const transport = chooseConsoleApi();
const consoleState = new ConsoleState(transport.api, transport.connection);
const agentsState = new AgentsState(transport.api, transport.connection);
const router = new Router();
const { loaded } = consoleState.start();
agentsState.start();

if (transport.kind === 'browser') {
  // The server turned ?token=… into a cookie when it served this page. Once a call has worked with
  // that cookie, take the token out of the address bar (and so out of history and screenshots).
  void loaded.then(() => {
    const url = new URL(window.location.href);
    if (consoleState.status === 'ready' && url.searchParams.has('token')) {
      url.searchParams.delete('token');
      window.history.replaceState(window.history.state, '', url);
    }
  });
}

mount(App, { target, props: { consoleState, agentsState, router } });
